// The bundler (examples/web/build.ts) loads plan files as text.
declare module '*.kvp' {
  const text: string;
  export default text;
}
