"""Quality metrics of generators (FID, KID, precision/recall), one metric per module;
`metric_main` lists them and runs one by name."""
