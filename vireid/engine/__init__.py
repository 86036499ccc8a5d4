"""Running models: training (trainer: build_run, train_one_epoch, train_step,
evaluate_and_checkpoint; distributed, run_log), checkpoints that resume
exactly, test-time feature extraction, and testing over every trial (tester)."""
