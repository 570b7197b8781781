//! Small blocking HTTP/1.1 server for control-plane endpoints (metrics, health, admin) and the simulator's REST API.
