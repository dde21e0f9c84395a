"""Safe rollout inside the pipeline: a new model version first serves a share of elements
(canary) or a copy of them (shadow), is judged by gates on its statistics, and is promoted
or rolled back automatically (issue 15)."""
