"""One serving replica: vLLM v1 scheduling, paged KV with prefix caching, preemption."""
