/// <reference types="vitest/config" />
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The gateway serves the built bundle (dist/) at `/` and the WebSocket at
// `/v1/ws` on the same origin. In development the Vite server stands in for
// the static part and forwards everything else to a gateway on :8080.
const GATEWAY = 'http://127.0.0.1:8080';

const proxy = {
  '/v1/ws': { target: GATEWAY, ws: true, changeOrigin: true },
  '/healthz': { target: GATEWAY, changeOrigin: true },
  '/readyz': { target: GATEWAY, changeOrigin: true },
  '/metrics': { target: GATEWAY, changeOrigin: true },
};

export default defineConfig({
  plugins: [react()],
  server: { proxy },
  preview: { proxy },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});
