"""End-to-end tests: real camsim processes on ptys, the real agent daemon, a real Mosquitto."""
