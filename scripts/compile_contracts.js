#!/usr/bin/env node
// Compiles every chains/evm/contracts/*.sol with the solc pinned in package.json (solc-js from
// node_modules, standard-JSON input; nothing is downloaded) and writes one artifact per contract:
//   chains/evm/contracts/artifacts/<Name>.json =
//     {contractName, abi, bytecode, deployedBytecode, compiler: {version, settings}}
// The output is stable (sorted sources, fixed key order, 2-space indent, trailing newline), so a
// recompile gives byte-identical files; tests/unit/test_contract_artifacts.py checks that.
//
// usage: node scripts/compile_contracts.js [--out DIR]
//   --out DIR  write the artifacts to DIR instead (the default directory also loses artifacts of
//              contracts that no longer exist; another DIR is only written to)
'use strict';

const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const CONTRACTS_DIR = path.join(ROOT, 'chains', 'evm', 'contracts');
const DEFAULT_OUT = path.join(CONTRACTS_DIR, 'artifacts');

// What the bytecode depends on; recorded verbatim in every artifact.
const SETTINGS = {
  evmVersion: 'cancun',
  optimizer: { enabled: true, runs: 200 },
  viaIR: false,
  metadata: { bytecodeHash: 'ipfs' },
};

function parseArgs(argv) {
  let out = DEFAULT_OUT;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--out') {
      if (i + 1 >= argv.length) throw new Error('--out needs a directory');
      out = path.resolve(argv[++i]);
    } else if (arg.startsWith('--out=')) {
      out = path.resolve(arg.slice('--out='.length));
    } else if (arg === '-h' || arg === '--help') {
      console.log('usage: node scripts/compile_contracts.js [--out DIR]');
      process.exit(0);
    } else {
      throw new Error(`unknown argument: ${arg}`);
    }
  }
  return { out };
}

function loadSolc() {
  try {
    return require(path.join(ROOT, 'node_modules', 'solc'));
  } catch (err) {
    throw new Error(`solc is not installed in ${ROOT}/node_modules: run \`npm ci\` (${err.message})`);
  }
}

function readSources() {
  const names = fs
    .readdirSync(CONTRACTS_DIR)
    .filter((f) => f.endsWith('.sol'))
    .sort();
  if (names.length === 0) throw new Error(`no .sol files in ${CONTRACTS_DIR}`);
  const sources = {};
  for (const name of names) {
    sources[name] = { content: fs.readFileSync(path.join(CONTRACTS_DIR, name), 'utf8') };
  }
  return sources;
}

// Imports are resolved only inside the contracts directory ("./X.sol" is normalised by solc to "X.sol").
function findImports(importPath) {
  const resolved = path.resolve(CONTRACTS_DIR, importPath);
  if (path.dirname(resolved) !== CONTRACTS_DIR || !fs.existsSync(resolved)) {
    return { error: `import not found in ${CONTRACTS_DIR}: ${importPath}` };
  }
  return { contents: fs.readFileSync(resolved, 'utf8') };
}

function hex(object) {
  return '0x' + (object || '');
}

function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const solc = loadSolc();
  const input = {
    language: 'Solidity',
    sources: readSources(),
    settings: {
      ...SETTINGS,
      outputSelection: {
        '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const msg of output.errors || []) {
    const text = msg.formattedMessage || msg.message;
    (msg.severity === 'error' ? console.error : console.warn)(text.trimEnd());
  }
  if (errors.length > 0) {
    console.error(`compile_contracts: ${errors.length} error(s); no artifacts written`);
    process.exit(1);
  }

  const version = solc.version();
  const artifacts = new Map();
  for (const source of Object.keys(output.contracts || {}).sort()) {
    for (const name of Object.keys(output.contracts[source]).sort()) {
      if (artifacts.has(name)) {
        throw new Error(`contract name ${name} is defined twice (${source}); artifacts are keyed by name`);
      }
      const c = output.contracts[source][name];
      const artifact = {
        contractName: name,
        sourceName: source,
        abi: c.abi,
        bytecode: hex(c.evm.bytecode.object),
        deployedBytecode: hex(c.evm.deployedBytecode.object),
        compiler: { version, settings: SETTINGS },
      };
      artifacts.set(name, JSON.stringify(artifact, null, 2) + '\n');
    }
  }

  fs.mkdirSync(out, { recursive: true });
  for (const [name, text] of artifacts) {
    fs.writeFileSync(path.join(out, `${name}.json`), text);
  }
  if (out === DEFAULT_OUT) {
    for (const f of fs.readdirSync(out)) {
      if (f.endsWith('.json') && !artifacts.has(f.slice(0, -'.json'.length))) {
        fs.unlinkSync(path.join(out, f));
        console.warn(`removed stale artifact ${f}`);
      }
    }
  }
  console.log(`compiled ${artifacts.size} contract(s) with solc ${version} -> ${path.relative(process.cwd(), out) || '.'}`);
}

try {
  main();
} catch (err) {
  console.error(`compile_contracts: ${err.message}`);
  process.exit(1);
}
