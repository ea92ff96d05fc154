"""The evaluation harness: matrices of topology x workload x policy, results, summaries, plots, manifests."""
