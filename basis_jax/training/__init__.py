"""Training: one loop (training_loop) that runs each model's objective (score networks,
Glow, the classifier), its optimizer factory and its resumable states."""
