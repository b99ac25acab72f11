"""Live serving: the V2 (Open Inference Protocol) stage servers, the router with its central
queues, and the stack that runs them as supervised processes (ipa.serving.stack)."""
