// ESLint (flat config): TypeScript's recommended rules and React's hooks rules (the rules
// of hooks, exhaustive effect dependencies, and the React Compiler's checks). `npm run
// lint` must stay clean, warnings included; it runs in `make check`.
import js from "@eslint/js";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";
import { defineConfig } from "eslint/config";

export default defineConfig([
  { ignores: ["dist/", "node_modules/", "e2e/screenshots/"] },
  {
    files: ["src/**/*.{ts,tsx}"],
    extends: [js.configs.recommended, tseslint.configs.recommended, reactHooks.configs.flat.recommended],
    languageOptions: { globals: globals.browser },
    rules: {
      "react-hooks/exhaustive-deps": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  {
    // The hand-written LSP client is being replaced by monaco-languageclient; until
    // then its JSON stays loosely typed.
    files: ["src/lsp.ts", "src/rpc.ts"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
  {
    // Node scripts; the functions they hand to the browser (page.evaluate) run there.
    files: ["e2e/**/*.mjs", "*.config.{js,ts}"],
    extends: [js.configs.recommended],
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
  },
]);
