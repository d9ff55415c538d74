// Parse Mermaid blocks with the real mermaid parser (under jsdom). Reads a JSON list of diagram
// sources on stdin, prints a JSON list of {ok, error}. Used by tests/test_report.py.
import { createRequire } from 'module';
const require = createRequire(process.env.MERMAID_MODULES + '/');
const { JSDOM } = require('jsdom');
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window; globalThis.document = dom.window.document;
const mermaid = (await import(require.resolve('mermaid'))).default;
let input = '';
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const source of JSON.parse(input)) {
  try { await mermaid.parse(source); results.push({ ok: true, error: null }); }
  catch (e) { results.push({ ok: false, error: String(e.message).split('\n')[0] }); }
}
console.log(JSON.stringify(results));
