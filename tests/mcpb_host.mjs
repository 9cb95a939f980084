// What an MCPB host (Claude Desktop) does with an installed bundle before starting it: read its
// manifest.json and resolve server.mcp_config with the mcpb library's own getMcpConfigForManifest
// (the code hosts share): ${__dirname}, ${HOME}, ${DESKTOP}, ${DOCUMENTS}, ${DOWNLOADS}, ${/},
// ${user_config.KEY} (the manifest's defaults, then the person's choices; booleans as "true"/"false").
// Prints {command, args, env} as JSON, or null when a required choice is missing (the host then
// does not start the server).
//
//   node mcpb_host.mjs <mcpb package dir> <installed bundle dir> '<user config as JSON>'
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, sep } from "node:path";
import { pathToFileURL } from "node:url";

const [moduleDir, installed, userConfig] = process.argv.slice(2);
const { getMcpConfigForManifest } = await import(pathToFileURL(join(moduleDir, "dist", "index.js")).href);
const manifest = JSON.parse(readFileSync(join(installed, "manifest.json"), "utf8"));
const home = homedir();
const config = await getMcpConfigForManifest({
  manifest,
  extensionPath: installed,
  systemDirs: {
    HOME: home,
    DESKTOP: join(home, "Desktop"),
    DOCUMENTS: join(home, "Documents"),
    DOWNLOADS: join(home, "Downloads"),
  },
  userConfig: JSON.parse(userConfig || "{}"),
  pathSeparator: sep,
  logger: { log() {}, info() {}, warn() {}, error() {} },
});
process.stdout.write(JSON.stringify(config ?? null) + "\n");
