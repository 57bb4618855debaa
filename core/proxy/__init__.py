"""The OpenAI-compatible proxy: routing, backend pool, HTTP app, admin token and client."""
