"""EVM chain plugin: watcher, submitter and the Solidity gateway it talks to (see contracts/)."""
