#!/usr/bin/env bash
# `make run`: start what a developer needs, under honcho, in the foreground; Ctrl-C stops all.
# Local stand-ins start only for what is not configured (in the environment or in .env):
#   MONGODB_URL unset          -> embedded MongoDB wire-protocol server (nx-27017), data in ./data
#   REDIS_URL unset            -> redis-server on 127.0.0.1:$DEV_REDIS_PORT
#   FIREBASE_PROJECT_ID unset  -> Firebase Auth emulator, project demo-sensorhub
#   SMTP_HOST unset            -> an SMTP sink that prints every message
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f .env ]; then set -a; . ./.env; set +a; fi

export DEV_MONGODB_PORT=${DEV_MONGODB_PORT:-27017}
export DEV_REDIS_PORT=${DEV_REDIS_PORT:-6380}
export DEV_SMTP_PORT=${DEV_SMTP_PORT:-1025}
# `make run` is development by definition, whatever .env says (production is the default
# everywhere else, so a copied .env.example starts the checks production needs).
export ENVIRONMENT=development
export LOG_JSON=${LOG_JSON:-false}
export DEV_API_PORT=${PORT:-8000}
procs=()

if [ -z "${MONGODB_URL:-}" ]; then
  mkdir -p data/mongodb
  export MONGODB_URL="mongodb://127.0.0.1:${DEV_MONGODB_PORT}"
  procs+=(mongodb)
fi
if [ -z "${REDIS_URL:-}" ]; then
  mkdir -p data
  export REDIS_URL="redis://127.0.0.1:${DEV_REDIS_PORT}/0"
  procs+=(redis)
fi
if [ -z "${FIREBASE_PROJECT_ID:-}" ]; then
  export FIREBASE_PROJECT_ID=demo-sensorhub
  export FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:9099
  procs+=(firebase)
fi
if [ -z "${SMTP_HOST:-}" ]; then
  export SMTP_HOST=127.0.0.1 SMTP_PORT="${DEV_SMTP_PORT}"
  procs+=(smtp)
fi
procs+=(api worker beat)

cat <<MSG
Sensorhub (development)
  API        http://127.0.0.1:${DEV_API_PORT}
  docs       http://127.0.0.1:${DEV_API_PORT}/docs   (ReDoc: /redoc, schema: /openapi.json)
  MongoDB    ${MONGODB_URL%%\?*}
  Redis      ${REDIS_URL}
  Firebase   ${FIREBASE_AUTH_EMULATOR_HOST:-project ${FIREBASE_PROJECT_ID}} (auth emulator when local)
  SMTP       ${SMTP_HOST}:${SMTP_PORT:-25}
Starting: ${procs[*]}   (Ctrl-C stops everything)
MSG

exec .venv/bin/honcho --no-colour -f Procfile.dev -e /dev/null start "${procs[@]}"
