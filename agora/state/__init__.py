"""Import path kept for 0.3.0 programs: key/value state backends."""
