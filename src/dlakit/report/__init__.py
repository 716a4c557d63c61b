"""Human-readable and machine-readable reports of each stage's results."""
