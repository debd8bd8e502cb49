"""Pure numerics: two-sample tests, power, sequential designs, corrections, SRM, IPW."""
