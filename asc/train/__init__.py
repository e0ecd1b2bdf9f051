"""Training: the one loop (``trainer.fit``), recipes, schedules, losses, teacher-logit store, device fine-tuning."""
