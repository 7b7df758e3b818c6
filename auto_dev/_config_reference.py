"""The configuration reference: what every setting means, rendered for the README.

The names, types and defaults come from :class:`~auto_dev.config.Settings` and
:class:`~auto_dev.config.LLMSettings` themselves; only the meanings live here. A test checks
that every field has a meaning and that README.md holds exactly what :func:`render_markdown`
produces, so the reference cannot fall behind the code. Regenerate it with::

    python -m auto_dev._config_reference --write README.md

:data:`OTHER_VARIABLES` are the ``AUTO_DEV_*`` variables read outside :class:`Settings`; the
unknown-name warning in :mod:`auto_dev.config` treats them as known.
"""

from __future__ import annotations

import enum
import sys
import textwrap
from pathlib import Path
from typing import Any

#: The meaning of each :class:`~auto_dev.config.Settings` field (a TOML key at the top level).
SETTINGS_MEANINGS: dict[str, str] = {
    "database_url": "SQLAlchemy URL of the database: an SQLite file (created by `auto-dev init`) "
                    "or PostgreSQL (`postgresql+psycopg://user@host/db`).",
    "tenant": "Tenant of the CLI commands and of `AutoDev` when none is passed.",
    "sandbox": "Sandbox backend: `auto` (Docker when an engine and the image are available, "
               "else the process sandbox), `docker`, `process` or `ray` (actors on a Ray "
               "cluster, see `ray_address`; needs `pip install \"auto-dev[ray]\"`).",
    "sandbox_image": "Image of the Docker sandbox (`auto-dev sandbox build-image` builds it).",
    "sandbox_workers": "Warm workers (processes or containers) in the sandbox pool; unset: one "
                       "per CPU (Docker: at least 2). With `ray`: per actor (unset: the "
                       "CPUs of its node).",
    "log_format": "Log lines on stderr: `console` (human) or `json` (one object per line).",
    "log_level": "Least severe log level shown: `debug`, `info`, `warning` or `error`.",
    "event_handler_timeout_s": "Seconds an event handler may run before it is cancelled and "
                               "its delivery retried.",
    "event_max_attempts": "Deliveries of one event to one handler before it is marked `dead`.",
    "evolution_budget": "Sandbox evaluations per evolution cycle (and the default of "
                        "`auto-dev evolve --budget`).",
    "evolution_islands": "Islands of the evolution population (each evolves apart, with "
                         "migration between them).",
    "case_timeout_s": "Wall-clock limit of one test case in the sandbox, in seconds.",
    "case_memory_mb": "Memory limit of one test case in the sandbox, in MiB.",
    "scheduler_interval_s": "Default interval of `auto-dev schedule add` (`--every`), in seconds.",
    "cycle_worker": "Run queued cycle jobs in this process once `AutoDev` is started (the "
                    "CLI's `scheduler run` and the service); off: only queue them.",
    "cycle_concurrency": "Cycles one process runs at the same time (each on its own target).",
    "cycle_lease_s": "Seconds a cycle's lock and its job stay held without a heartbeat; a dead "
                     "process's cycles are taken over after this.",
    "cycle_deadline_s": "Longest a queued cycle may run before it is stopped and its job "
                        "marked failed.",
    "cycle_max_attempts": "Claims of one cycle job (its worker died each time) before it is "
                          "marked failed instead of tried again.",
    "cycle_poll_s": "Seconds between the cycle worker's looks at the queue (it is also woken "
                    "at once by jobs queued in its own process).",
    "max_task_chars": "Longest task description an episode may carry (characters).",
    "max_trace_chars": "Longest error trace an episode may carry (characters).",
    "max_payload_bytes": "Largest episode or skill execution, as encoded JSON (bytes).",
    "max_json_depth": "Deepest nesting of the JSON values an episode may carry.",
    "max_json_int_digits": "Most digits of an integer inside an episode's JSON values.",
    "scheduler_min_interval_s": "Shortest interval a schedule may have (seconds).",
    "scheduler_max_interval_s": "Longest interval a schedule may have (seconds).",
    "candidate_retention_days": "Age after which `auto-dev candidates prune` deletes closed "
                                "(failed, rejected) candidates; 0: every closed one, whatever "
                                "its age.",
    "server_host": "Address `auto-dev serve` listens on (`--host`); `0.0.0.0` for every "
                   "interface.",
    "server_port": "Port `auto-dev serve` listens on (`--port`).",
    "server_max_body_bytes": "Largest request body the service accepts, in bytes (larger: "
                             "413).",
    "server_max_json_depth": "Deepest nesting of arrays and objects accepted in a JSON body "
                             "(deeper: 400).",
    "server_max_batch": "Most episodes or skill executions in one batch request, and most "
                        "spans in one trace export.",
    "server_idempotency_ttl_s": "Seconds a response is kept for retries with the same "
                                "`Idempotency-Key`; an older key records again.",
    "server_session_secret": "Key that signs the review page's session cookies (at least 32 "
                             "characters; unset: a random key per process, so sessions end "
                             "at a restart and several workers need it set).",
    "server_session_ttl_s": "Seconds a review page login lasts.",
    "server_shutdown_timeout_s": "On SIGTERM, seconds the service waits for in-flight requests "
                                 "before closing their connections (cycles then get the "
                                 "cycle worker's own drain time).",
    "ray_address": "The Ray cluster of `sandbox = \"ray\"`: `host:port` of the head, "
                   "`ray://host:port` (Ray Client), `auto`, or unset (a cluster started on "
                   "this machine, else a new local instance).",
    "ray_actors": "Evaluation actors on the Ray cluster, spread over its nodes; unset: one per "
                  "alive node.",
    "ray_node_sandbox": "The pool each Ray actor runs on its node: `auto` (Docker where the "
                        "node has an engine and the image), `docker` or `process`.",
    "llm_model": "A litellm model string (`openai/gpt-4o-mini`, `ollama/qwen2.5-coder`); the "
                 "short form of `[llm] model`. Unset (and no `[llm]` model): offline mode.",
    "llm_api_base": "Base URL of the model's API; the short form of `[llm] api_base`.",
    "llm_api_key": "API key of the model; the short form of `[llm] api_key`.",
    "llm": "The `[llm]` table (below).",
}

#: The meaning of each :class:`~auto_dev.config.LLMSettings` field (a key of the ``[llm]`` table).
LLM_MEANINGS: dict[str, str] = {
    "model": "A litellm model string; one deployment named after it.",
    "api_base": "Base URL of the model's API.",
    "api_key": "API key of the model (`os.environ/NAME` reads it from the variable NAME).",
    "model_list": "Deployments in litellm Router form: "
                  "`[{model_name = ..., litellm_params = {...}}]`.",
    "fallbacks": "Router fallbacks: `[{primary = [\"backup\"]}]`.",
    "num_retries": "Retries of a failed call (0 to 10).",
    "retry_backoff_s": "First retry delay in seconds, doubled per retry (a provider's "
                       "Retry-After wins).",
    "timeout_s": "Seconds one model call may take.",
    "max_tokens": "Most tokens one answer may have.",
    "temperature": "Sampling temperature (0 to 2).",
    "cache_dir": "Directory of a disk cache of answers (unset: no cache).",
    "daily_budget_usd": "Spend per tenant and UTC day, in USD, reserved before each call and "
                        "never exceeded (unset: no limit; the ledger still records).",
    "tenant_budgets_usd": "Per-tenant daily budgets, overriding `daily_budget_usd`: "
                          "`{tenant = usd}`.",
    "prices": "Prices of models litellm does not know: `{model = {input_cost_per_token = ..., "
              "output_cost_per_token = ...}}`.",
    "circuit_failure_threshold": "Consecutive failures that open a deployment's circuit "
                                 "breaker.",
    "circuit_cooldown_s": "Seconds an open circuit waits before a trial call.",
    "llm_mutation_fraction": "Share of mutations asked of the model (0 to 1); the rest use the "
                             "offline AST operators.",
    "repair_rounds": "Extra answers the skill writer asks for when a drafted skill fails its "
                     "tests.",
}

#: ``AUTO_DEV_*`` variables read outside :class:`~auto_dev.config.Settings`, with their meaning.
OTHER_VARIABLES: dict[str, str] = {
    "AUTO_DEV_CONFIG": "Path of the TOML configuration file (unset: no file).",
    "AUTO_DEV_ACTOR": "Who the review commands record as deciding (default: the OS user).",
    "AUTO_DEV_SUITE": "`auto-dev sandbox build-image`: Debian suite of the image "
                      "(default `bookworm`).",
    "AUTO_DEV_MIRROR": "`auto-dev sandbox build-image`: Debian mirror (default: read from "
                       "apt's sources).",
    "AUTO_DEV_SANDBOX_UID": "`auto-dev sandbox build-image`: uid of the sandbox user "
                            "(default 10001).",
    "AUTO_DEV_KEEP_ROOTFS": "`auto-dev sandbox build-image`: `1` keeps the temporary root "
                            "filesystem.",
    "AUTO_DEV_REQUIRE_DOCKER": "Test suite: `1` makes Docker tests fail instead of skip when "
                               "Docker is missing.",
    "AUTO_DEV_REQUIRE_POSTGRES": "Test suite: `1` makes PostgreSQL tests fail instead of skip "
                                 "when the server is missing.",
    "AUTO_DEV_REQUIRE_RAY": "Test suite: `1` makes Ray tests fail instead of skip when Ray is "
                            "not installed.",
    "AUTO_DEV_REQUIRE_BROWSER": "Test suite: `1` makes the headless Chromium tests of the "
                                "review page fail instead of skip when Chromium or Playwright "
                                "is missing.",
    "AUTO_DEV_CHROMIUM": "Test suite: the Chromium executable the browser tests drive (default: "
                         "`chromium` on the PATH).",
    "AUTO_DEV_ARTIFACTS": "Test suite: directory for test artifacts such as the review page "
                          "screenshots (default `test-artifacts/` in the repository).",
    "AUTO_DEV_TEST_POSTGRES_URL": "Test suite: the PostgreSQL server for the PostgreSQL tests.",
    "AUTO_DEV_TEST_POSTGRES_DB": "`.ci/setup-postgres.sh`: name of the test database.",
}

#: Variables the test suite sets for itself (canaries, fake keys) start with this.
_TEST_PREFIX = "AUTO_DEV_TEST_"

START = "<!-- configuration-reference:start (generated: python -m auto_dev._config_reference " \
        "--write README.md) -->"
END = "<!-- configuration-reference:end -->"


def is_reserved_variable(name: str) -> bool:
    """Whether ``name`` (upper case) belongs to the test suite rather than to the settings."""
    return name.startswith(_TEST_PREFIX)


def render_markdown() -> str:
    """The reference as Markdown tables (without the surrounding markers)."""
    from auto_dev.config import LLMSettings, Settings

    missing = [f"Settings.{n}" for n in Settings.model_fields if n not in SETTINGS_MEANINGS]
    missing += [f"LLMSettings.{n}" for n in LLMSettings.model_fields if n not in LLM_MEANINGS]
    if missing:
        raise KeyError(f"no meaning written in {__name__} for {', '.join(missing)}")
    intro = ("Every setting is a top-level key of the TOML file named by `AUTO_DEV_CONFIG` and "
             "an environment variable; a variable wins over the file. `[llm]` keys are also "
             "variables with a double underscore (`AUTO_DEV_LLM__NUM_RETRIES=4`; lists and "
             "tables as JSON). An unknown `AUTO_DEV_*` variable or top-level key is ignored "
             "with a warning naming the closest known name.")
    lines = [
        *textwrap.wrap(intro, width=100, break_on_hyphens=False),
        "",
        "| TOML key | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, info in Settings.model_fields.items():
        default = "see below" if name == "llm" else _default(info)
        lines.append(f"| `{name}` | `AUTO_DEV_{name.upper()}` | {default} | "
                     f"{SETTINGS_MEANINGS[name]} |")
    lines += ["", "The `[llm]` table:", "",
              "| TOML key (`[llm]`) | environment variable | default | meaning |",
              "|---|---|---|---|"]
    for name, info in LLMSettings.model_fields.items():
        lines.append(f"| `{name}` | `AUTO_DEV_LLM__{name.upper()}` | {_default(info)} | "
                     f"{LLM_MEANINGS[name]} |")
    lines += ["", "Other variables:", "", "| environment variable | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in OTHER_VARIABLES.items()]
    return "\n".join(lines) + "\n"


def _default(info: Any) -> str:
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list | dict) and not value:
        return "`[]`" if isinstance(value, list) else "`{}`"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    return f"`{value!r}`"


def replace_in(text: str) -> str:
    """``text`` (the README) with the part between the markers regenerated."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {START!r} ... {END!r} block")
    return text[: start + len(START)] + "\n\n" + render_markdown() + "\n" + text[end:]


def section_of(text: str) -> str:
    """The generated part of ``text`` (between the markers), as :func:`render_markdown` wrote it."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {START!r} ... {END!r} block")
    return text[start + len(START): end].strip("\n") + "\n"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_in(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    if argv:
        sys.stderr.write("usage: python -m auto_dev._config_reference [--write README.md]\n")
        return 2
    sys.stdout.write(render_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
