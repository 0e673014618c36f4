#!/usr/bin/env bash
# Least-privilege RabbitMQ users for one Corral namespace: gateway, dispatcher, agents.
#
#   deploy/rabbitmq-users.sh [--vhost VHOST] [--namespace NS] [--user-prefix PREFIX]
#                            [--agent NAME[=POOL,POOL...]]... [--remove-agent NAME]...
#
# Passwords come from the environment, never the command line (which `ps` shows):
#   CORRAL_GATEWAY_PASSWORD, CORRAL_DISPATCHER_PASSWORD, CORRAL_AGENT_PASSWORD, and for each
#   --agent NAME optionally CORRAL_AGENT_PASSWORD_<NAME> (upper case, other characters as _).
# Users: <prefix>gateway, <prefix>dispatcher, <prefix>agent (shared by every agent) and, for
# each --agent NAME, <prefix>agent-NAME that may read only <ns>.agent.NAME and the chunk queues
# of its POOLs (all pools when none is given). Agents configure nothing, and topic permissions
# let them publish only agent.* and chunk.* on the events exchange. --remove-agent deletes a
# node's user (with `corral agent revoke NAME`). The prefix defaults to "corral-". Run again to
# change passwords or permissions: it is idempotent. The regular expressions follow
# common/topology.py; deploy/README.md explains each one.
set -euo pipefail

vhost=/
namespace=corral
prefix=corral-
agents=()
removed=()
while [ $# -gt 0 ]; do
    case "$1" in
        --vhost) vhost=$2; shift 2 ;;
        --namespace) namespace=$2; shift 2 ;;
        --user-prefix) prefix=$2; shift 2 ;;
        --agent) agents+=("$2"); shift 2 ;;
        --remove-agent) removed+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "rabbitmq-users.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

valid_name='^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'
[[ $namespace =~ $valid_name ]] || { echo "rabbitmq-users.sh: bad namespace $namespace" >&2; exit 2; }
valid_agent='^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,199}$'
valid_pools='^[a-z0-9_-]{1,32}(,[a-z0-9_-]{1,32})*$'
for spec in "${agents[@]}" "${removed[@]}"; do
    name=${spec%%=*}
    [[ $name =~ $valid_agent ]] || { echo "rabbitmq-users.sh: bad agent name $name" >&2; exit 2; }
    if [[ $spec == *=* ]]; then
        [[ ${spec#*=} =~ $valid_pools ]] || { echo "rabbitmq-users.sh: bad pools in $spec" >&2; exit 2; }
    fi
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

# Topic permissions: on the events exchange an agent may publish only its own families.
# (Commands -- task.*, worker.*, ... -- are also signed with a key agents never hold.)
agent_topics() {  # user
    rabbitmqctl -q set_topic_permissions -p "$vhost" "$1" "${namespace}.events" '^(agent|chunk)\.' '^$' >/dev/null
    printf '%-28s topic     %s: write ^(agent|chunk)\\. read ^$\n' "" "${namespace}.events"
}

# Gateway: declares the core topology and publishes task.* / worker.* events. Reads nothing.
grant "${prefix}gateway" "${CORRAL_GATEWAY_PASSWORD:-}" \
    "^${ns}\\.(${core})\$" \
    "^${ns}\\.(${core_bind})\$" \
    "^${ns}\\.(events|dead)\$"

# Dispatcher: consumes its two queues; declares chunk queues and, when an agent says hello, that
# agent's control queue (agents declare nothing); publishes chunks, control messages, dead letters.
grant "${prefix}dispatcher" "${CORRAL_DISPATCHER_PASSWORD:-}" \
    "^${ns}\\.(${core}|chunks\\..+|agent\\..+)\$" \
    "^${ns}\\.(${core_bind}|chunks|control|chunks\\..+|agent\\..+)\$" \
    "^${ns}\\.(events|chunks|control|dead|dispatcher|heartbeats)\$"

# Agents: publish events and dead letters, consume chunk queues and their control queue. They
# configure (declare, delete) nothing, never write to the chunks or control exchanges (an agent
# cannot hand out work or order other agents about), and publish only agent.* and chunk.* events.
agent_grant() {  # user password readable-queues-regex
    grant "$1" "$2" '^$' "^${ns}\\.(events|dead)\$" "^${ns}\\.($3)\$"
    agent_topics "$1"
}
agent_grant "${prefix}agent" "${CORRAL_AGENT_PASSWORD:-}" 'chunks\..+|agent\..+'
for spec in "${agents[@]}"; do
    name=${spec%%=*}
    pools='.+'
    if [[ $spec == *=* ]]; then
        pools="(${spec#*=})"
        pools=${pools//,/|}
    fi
    var="CORRAL_AGENT_PASSWORD_$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]' | tr -c 'A-Z0-9\n' '_')"
    agent_grant "${prefix}agent-${name}" "${!var:-${CORRAL_AGENT_PASSWORD:-}}" \
        "chunks\\.${pools}\\..+|agent\\.$(quote "$name")"
done
for name in "${removed[@]}"; do
    if rabbitmqctl -q list_users | awk '{print $1}' | grep -qxF -- "${prefix}agent-${name}"; then
        rabbitmqctl -q delete_user "${prefix}agent-${name}" >/dev/null
        echo "${prefix}agent-${name} deleted"
    fi
done
