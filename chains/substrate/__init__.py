"""Substrate chain plugin groundwork: a local chopsticks chain, remark-encoded messages, a typed
RPC client and the evidence checks a watcher will run (no plugin entry point yet)."""
