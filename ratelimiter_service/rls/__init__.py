"""Envoy's rate limit service (RLS v3, gRPC) on top of the limiter: `config` reads Envoy
ratelimit's descriptor configuration, `service` answers `ShouldRateLimit`."""
