"""The HTTP/WebSocket surface: app factory, middleware, error handlers, dependencies."""
