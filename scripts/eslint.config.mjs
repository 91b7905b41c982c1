// Lint (npm run lint, from the repository root with --config): ESLint's and typescript-eslint's
// recommended rules over the TypeScript and the scripts; formatting is Prettier's (npm run format).
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "dist/",
      "dist-test/",
      "out/",
      "media/panel.js",
      ".test-artifacts/",
      ".gpu/",
      "gpu-results/",
      "models/",
      "scripts/demo-model/work/",
      "node_modules/",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // `_name` marks a value kept on purpose (a destructured field left out, a required parameter).
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" },
      ],
    },
  },
  // Plain Node scripts (CommonJS): require is how they load.
  { files: ["**/*.js", "**/*.cjs"], rules: { "@typescript-eslint/no-require-imports": "off" } },
  // The webview script runs in the browser.
  { files: ["src/webview/**/*.ts"], languageOptions: { globals: { ...globals.browser } } },
  { files: ["test/e2e/**/*.js"], languageOptions: { globals: { ...globals.browser, ...globals.node } } },
);
