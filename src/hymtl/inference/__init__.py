"""Loading trained and exported models to predict with."""
