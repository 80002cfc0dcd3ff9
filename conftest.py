# The leaderboard plugin (options --tasks, --methods, --report-dir, --device, --compare, ...).
pytest_plugins = ["abench.pytest_plugin"]
