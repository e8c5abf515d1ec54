/** s as one single-quoted sh word (a quote inside becomes '\''), for the scripts the bench writes. */
export const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
