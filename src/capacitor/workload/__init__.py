"""Request streams: arrival processes, lengths, shared prefixes and user sessions."""
