#!/usr/bin/env bash
# Least-privilege RabbitMQ users for one Corral namespace: gateway, dispatcher, agents.
#
#   deploy/rabbitmq-users.sh [--vhost VHOST] [--namespace NS] [--user-prefix PREFIX] [--agent NAME]...
#
# Passwords come from the environment, never the command line (which `ps` shows):
#   CORRAL_GATEWAY_PASSWORD, CORRAL_DISPATCHER_PASSWORD, CORRAL_AGENT_PASSWORD
# Users: <prefix>gateway, <prefix>dispatcher, <prefix>agent (shared by every agent) and, for
# each --agent NAME, <prefix>agent-NAME whose control queue is only <ns>.agent.NAME. The prefix
# defaults to "corral-". Run again to change passwords or permissions: it is idempotent.
# The regular expressions follow common/topology.py; deploy/README.md explains each one.
set -euo pipefail

vhost=/
namespace=corral
prefix=corral-
agents=()
while [ $# -gt 0 ]; do
    case "$1" in
        --vhost) vhost=$2; shift 2 ;;
        --namespace) namespace=$2; shift 2 ;;
        --user-prefix) prefix=$2; shift 2 ;;
        --agent) agents+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "rabbitmq-users.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

valid_name='^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'
[[ $namespace =~ $valid_name ]] || { echo "rabbitmq-users.sh: bad namespace $namespace" >&2; exit 2; }
for name in "${agents[@]}"; do
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,199}$ ]] || { echo "rabbitmq-users.sh: bad agent name $name" >&2; exit 2; }
done

# A name as a regex literal: only '.' is special among the characters names may hold.
quote() { printf '%s' "${1//./\\.}"; }
ns=$(quote "$namespace")

# Names (common/topology.py): exchanges events, chunks, control, dead; queues dispatcher,
# heartbeats, dead, chunks.<pool>.<command>, agent.<name>.
core="events|chunks|control|dead|dispatcher|heartbeats"   # what every publisher of events declares
core_bind="events|dead|dispatcher|heartbeats"             # queues it binds, exchanges it publishes to

ensure_user() {  # user password
    if rabbitmqctl -q list_users | awk '{print $1}' | grep -qxF -- "$1"; then
        printf '%s' "$2" | rabbitmqctl -q change_password "$1" >/dev/null
    else
        printf '%s' "$2" | rabbitmqctl -q add_user "$1" >/dev/null
    fi
}

grant() {  # user password configure write read
    [ -n "$2" ] || { echo "rabbitmq-users.sh: no password for $1 (see the header)" >&2; exit 2; }
    ensure_user "$1" "$2"
    rabbitmqctl -q set_permissions -p "$vhost" "$1" "$3" "$4" "$5" >/dev/null
    printf '%-28s configure %s\n%-28s write     %s\n%-28s read      %s\n' "$1" "$3" "" "$4" "" "$5"
}

# Gateway: declares the core topology and publishes task.* / worker.* events. Reads nothing.
grant "${prefix}gateway" "${CORRAL_GATEWAY_PASSWORD:-}" \
    "^${ns}\\.(${core})\$" \
    "^${ns}\\.(${core_bind})\$" \
    "^${ns}\\.(events|dead)\$"

# Dispatcher: consumes its two queues, declares chunk queues and publishes chunks, control
# messages and dead letters.
grant "${prefix}dispatcher" "${CORRAL_DISPATCHER_PASSWORD:-}" \
    "^${ns}\\.(${core}|chunks\\..+)\$" \
    "^${ns}\\.(${core_bind}|chunks|control|chunks\\..+)\$" \
    "^${ns}\\.(events|chunks|dead|dispatcher|heartbeats)\$"

# Agents: publish events, consume chunk queues and their control queue. Never write to the
# chunks or control exchanges: an agent cannot hand out work or order other agents about.
agent_grant() {  # user password agent-queue-regex
    grant "$1" "$2" \
        "^${ns}\\.(${core}|chunks\\..+|$3)\$" \
        "^${ns}\\.(${core_bind}|chunks\\..+|$3)\$" \
        "^${ns}\\.(events|chunks|control|dead|chunks\\..+|$3)\$"
}
agent_grant "${prefix}agent" "${CORRAL_AGENT_PASSWORD:-}" 'agent\..+'
for name in "${agents[@]}"; do
    agent_grant "${prefix}agent-${name}" "${CORRAL_AGENT_PASSWORD:-}" "agent\\.$(quote "$name")"
done
