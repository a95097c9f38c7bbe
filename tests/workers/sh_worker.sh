#!/usr/bin/env bash
# A non-Python AetherMagic worker: bash around mosquitto_sub / mosquitto_pub (mosquitto-clients).
#
# It joins the same share group as the aethermagic library (MQTT 3.1.1, QoS 0, clean session):
#   $share/{union}_{job}_workgroup/{union}/{job}/{task}/{context}/+/perform
# and replies like the library: on .../{tid}/status ({"status": "progress", "progress": 0}) for
# every delivery, then on .../{tid}/complete ({"status": "succeed", "progress": 100}) once per
# tid (the library's de-duplication), with "client" and "host" in the JSON body. After its
# SUBACK it announces itself on {union}/system/online/{host}/{client}/online, as the library does.
#
# Environment: MQTT_HOST, MQTT_PORT, AETHERDIAG_WORKER (name), AM_UNION, AM_JOB, AM_TASK,
# AM_CONTEXT (defaults production/engine/process-data/batch1); AM_GROUP overrides the share
# group name (default {union}_{job}_workgroup, the library's).
# stdout: one line once the broker acknowledged the subscription:
#   READY <name> pid=<pid> client=<client> mqtt_id=<id> filter=<filter>
# SIGTERM/SIGINT: stops mosquitto_sub and exits 0. Exits 1 if mosquitto_sub ends on its own.
set -u

NAME=${AETHERDIAG_WORKER:-sh-worker-$$}
HOST=${MQTT_HOST:-127.0.0.1}
PORT=${MQTT_PORT:-1883}
UNION=${AM_UNION:-production}
JOB=${AM_JOB:-engine}
TASK=${AM_TASK:-process-data}
CONTEXT=${AM_CONTEXT:-batch1}
GROUP=${AM_GROUP:-${UNION}_${JOB}_workgroup}
FILTER="\$share/$GROUP/$UNION/$JOB/$TASK/$CONTEXT/+/perform"
SUB=${MOSQUITTO_SUB:-mosquitto_sub}
PUB=${MOSQUITTO_PUB:-mosquitto_pub}

MYHOST=$(hostname 2>/dev/null || echo localhost)
CLIENT=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "sh-$NAME-$$")
MQTT_ID="sh-$NAME-$$"

log() { printf '[%s] %s\n' "$NAME" "$*" >&2; }

# body ACTION STATUS PROGRESS DATA_JSON: the keys and order of AetherMessage.to_json()
body() {
    printf '{"action": "%s", "status": "%s", "progress": %s, "data": %s, "host": "%s", "client": "%s", "job": "", "workgroup": "", "task": "", "context": "", "tid": ""}' \
        "$1" "$2" "$3" "$4" "$MYHOST" "$CLIENT"
}
publish() { "$PUB" -h "$HOST" -p "$PORT" -V mqttv311 -q 0 -t "$1" -m "$2" || log "publish to $1 failed"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sh_worker.XXXXXX") || exit 1
mkfifo "$tmp/sub" || exit 1
# -d prints the SUBACK (our readiness signal) on stdout; stdbuf makes it line-buffered.
unbuf=()
if command -v stdbuf >/dev/null 2>&1; then unbuf=(stdbuf -oL); fi
"${unbuf[@]}" "$SUB" -h "$HOST" -p "$PORT" -V mqttv311 -q 0 -i "$MQTT_ID" -d -F '%t %p' \
    -t "$FILTER" >"$tmp/sub" 2>"$tmp/sub.err" &
subpid=$!

stopping=0
cleanup() {
    kill "$subpid" 2>/dev/null
    wait "$subpid" 2>/dev/null
    [ -s "$tmp/sub.err" ] && cat "$tmp/sub.err" >&2
    rm -rf "$tmp"
}
trap 'stopping=1; cleanup; log stopped; exit 0' TERM INT

declare -A done_tids=()
ready=0
[ ${#unbuf[@]} -eq 0 ] && log "no stdbuf: the READY line waits for the first message"
exec 3<"$tmp/sub"
while IFS= read -r line <&3; do
    case $line in
        "Subscribed (mid: "*)
            granted=${line##*: }
            if [ "$granted" = "128" ]; then log "subscription refused: $FILTER"; break; fi
            if [ $ready -eq 0 ]; then
                ready=1
                publish "$UNION/system/online/$MYHOST/$CLIENT/online" "$(body online connected 100 '{}')"
                echo "READY $NAME pid=$$ client=$CLIENT mqtt_id=$MQTT_ID filter=$FILTER"
            fi
            ;;
        "Client "*) ;;  # other mosquitto_sub debug lines
        *" "*)
            topic=${line%% *}
            payload=${line#* }
            IFS=/ read -r u j t c tid action rest <<<"$topic"
            [ "$action" = perform ] && [ -z "$rest" ] || continue
            case $payload in *'"action": "perform"'*|*'"action":"perform"'*) ;; *) continue ;; esac
            base="$u/$j/$t/$c/$tid"
            publish "$base/status" "$(body status progress 0 '{}')"
            if [ -n "${done_tids[$tid]:-}" ]; then log "repeat of $tid ignored"; continue; fi
            done_tids[$tid]=1
            log "handling $tid"
            publish "$base/complete" \
                "$(body complete succeed 100 "{\"worker\": \"$NAME\", \"pid\": $$}")"
            ;;
    esac
done
[ $stopping -eq 1 ] && exit 0
log "mosquitto_sub ended"
cleanup
exit 1
