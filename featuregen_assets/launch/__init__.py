"""The launch side: runs on the instance in FEATUREGEN_HOME (`runs`), a CLI run's console
(`run_console`), the instance's dagster.yaml (`instance_config`), the executor the settings
name (`executors`), Ray's step handler (`ray_steps`) and the op tags that place model and
download steps (`placement`). The one place that sets up the environment Dagster and its
child processes inherit."""
