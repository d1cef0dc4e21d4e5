// Builds the dashboard into the API package (api/syncjob_api/web/static/dist), served at /dashboard/.
// DASHBOARD_OUT overrides the folder (the API image's build stage).
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

export default defineConfig({
  base: '/dashboard/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: process.env.DASHBOARD_OUT
      || fileURLToPath(new URL('../api/syncjob_api/web/static/dist', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'assets',
  },
})
