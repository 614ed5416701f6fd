"""Import paths kept for 0.3.0 programs that reached into its runtime package."""
