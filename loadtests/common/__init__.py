"""What the locustfiles share, one module per job.

- `options`: the command-line options (each with its environment variable) and reading them
- `addresses`: the simulated client IPs
- `outcome`: one HTTP exchange as a user saw it
- `sessions`: logins shared per account, refreshed by one user at a time
- `api_client`: a plain client of the gateway for the end-of-run checks
- `collector`: the figures that travel from every worker to the master
- `run_state`: the run's shared state in this process
- `platform_user`: the abstract user every HTTP suite's users derive from
- `shapes`: load shapes as tables of stages
- `findings`: what a suite's analysis contributes: figures, gates and notes
- `metrics`: the services' /metrics, scraped before and after the run
- `report`: the end-of-run report (summary.json and the printed verdict)
- `suite`: a suite's options and listeners on Locust's events

Importing most of these imports Locust, which monkey-patches the process with gevent:
import them from locustfiles only, never from the project's tests (they run Locust as a
process). One locustfile per Locust process: each suite registers its own options and
listeners.
"""
