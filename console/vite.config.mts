// Builds the console into app/console/static (served by the API at /console) and prints the
// gzipped size of what it wrote, apart from the Firebase SDK's own chunk (limit 300 kB).
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { defineConfig, type Plugin } from "vite";

const LIMIT_KB = 300;

function bundleSize(): Plugin {
  return {
    name: "bundle-size",
    generateBundle(_options, bundle) {
      let ours = 0;
      let firebase = 0;
      for (const item of Object.values(bundle)) {
        const code = item.type === "chunk" ? item.code : item.source;
        const size = gzipSync(typeof code === "string" ? Buffer.from(code) : Buffer.from(code)).length;
        if (item.fileName.includes("firebase")) firebase += size;
        else ours += size;
      }
      const kb = (n: number) => (n / 1024).toFixed(1);
      console.log(`console bundle: ${kb(ours)} kB gzipped without Firebase (limit ${LIMIT_KB} kB); Firebase SDK ${kb(firebase)} kB`);
      if (ours > LIMIT_KB * 1024) this.error(`console bundle over ${LIMIT_KB} kB gzipped`);
    },
  };
}

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/console/",
  plugins: [bundleSize()],
  build: {
    outDir: "../app/console/static",
    emptyOutDir: true,
    sourcemap: false,
    rollupOptions: {
      output: {
        manualChunks(id) {
          if (id.includes("node_modules/firebase") || id.includes("node_modules/@firebase")) return "firebase";
          return undefined;
        },
      },
    },
  },
});
