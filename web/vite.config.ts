/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Built into the Python package, which serves it at / (see tradestack.api.static).
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../src/tradestack/api/static",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/ws": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    css: false,
    // Typing with user-event takes a few seconds of a loaded 2-core machine (the Login test timed out at the default
    // 5 s while the Python suite and builds ran beside it); a hung test still fails, after 30 s.
    testTimeout: 30_000,
  },
});
