/** esbuild loads .css files as text (src/ui/build.ts) */
declare module '*.css' {
  const text: string;
  export default text;
}
