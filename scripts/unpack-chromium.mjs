#!/usr/bin/env node
// Unpack the headless Chromium of @sparticuz/chromium (pinned in package-lock.json) for the
// browser tests: the binary, the NSS libraries it links against, and its fonts, all under the
// folder given as the first argument. Needs no root and no system packages.
//
//     node scripts/unpack-chromium.mjs .chromium
//
// Afterwards: <folder>/chromium, run with LD_LIBRARY_PATH=<folder>/al2023/lib and
// FONTCONFIG_FILE=<folder>/fonts.conf (tests/chromium.py does this).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const target = resolve(process.argv[2] ?? ".chromium");
mkdirSync(target, { recursive: true });
// The package's inflate unpacks into os.tmpdir(), which follows TMPDIR: point it at our folder
// before the module is loaded.
process.env.TMPDIR = target;

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..", "node_modules", "@sparticuz", "chromium");
const { inflate } = await import(join(packageDir, "build", "esm", "lambdafs.js"));
const bin = join(packageDir, "bin");
const [binary] = await Promise.all(["chromium.br", "al2023.tar.br", "fonts.tar.br"].map((name) => inflate(join(bin, name))));

// The package's own fonts.conf names Lambda's folders; this one names ours.
writeFileSync(join(target, "fonts.conf"), `<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <dir>${join(target, "fonts")}</dir>
  <cachedir>${join(target, "fonts-cache")}</cachedir>
</fontconfig>
`);
const { version } = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
writeFileSync(join(target, "VERSION"), version + "\n");
console.log(`Chromium ${version} unpacked: ${binary}`);
