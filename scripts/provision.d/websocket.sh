# shellcheck shell=bash
# A minimal client for Home Assistant's WebSocket API in bash, for scripts/provision.
#
# Listing discovered config flows and ignoring one exist only in the WebSocket API, and
# the shells where the image team runs the script (Terminal & SSH add-on) have curl but
# no WebSocket client. So this speaks RFC 6455 itself over bash's /dev/tcp: plain
# ws:// only, text frames up to 64 KiB sent, any size received, masked as clients must.
# Needs bash 4.3 or later ({fd} redirections, name references) and od.

# ws_request URL TOKEN REQUEST_JSON
#   Connects to URL (http://host[:port]/path), authenticates with TOKEN, sends the
#   request with id 1 and prints the "result" of the response as JSON. Returns 1 when the
#   connection, the login or the request fails, with the reason on stderr.
ws_request() {
    local url="$1" token="$2" request="$3"
    local rest="${url#*://}"
    local hostport="${rest%%/*}" path="/"
    [ "$rest" != "$hostport" ] && path="/${rest#*/}"
    local host="${hostport%:*}" port="${hostport##*:}"
    [ "$host" = "$hostport" ] && port=80

    if ! exec {WS_FD}<>"/dev/tcp/$host/$port"; then
        echo "websocket: cannot connect to $host:$port" >&2
        return 1
    fi
    local status=0
    _ws_session "$hostport" "$path" "$token" "$request" || status=$?
    _ws_send_frame 8 "" 2>/dev/null || true
    exec {WS_FD}>&-
    return "$status"
}

_ws_session() {
    local hostport="$1" path="$2" token="$3" request="$4"

    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n' \
        "$path" "$hostport" "$(_ws_key)" >&"$WS_FD"

    local line
    IFS= read -r -u "$WS_FD" line || { echo "websocket: no response from $hostport$path" >&2; return 1; }
    case "$line" in
        "HTTP/1.1 101"*) ;;
        *) echo "websocket: $hostport$path rejected the WebSocket upgrade: ${line%$'\r'}" >&2; return 1 ;;
    esac
    while IFS= read -r -u "$WS_FD" line; do
        [ "${line%$'\r'}" = "" ] && break
    done

    # Home Assistant's handshake: auth_required, auth, then auth_ok or auth_invalid.
    local message
    _ws_read_message message || return 1
    if [ "$(jq -r .type <<<"$message")" != "auth_required" ]; then
        echo "websocket: expected auth_required, got $message" >&2
        return 1
    fi
    _ws_send_frame 1 "$(jq -nc --arg token "$token" '{type: "auth", access_token: $token}')"
    _ws_read_message message || return 1
    if [ "$(jq -r .type <<<"$message")" != "auth_ok" ]; then
        echo "websocket: login rejected: $(jq -r '.message // .type' <<<"$message")" >&2
        return 1
    fi

    _ws_send_frame 1 "$(jq -c '. + {id: 1}' <<<"$request")"
    while _ws_read_message message; do
        if [ "$(jq -r '.id // empty' <<<"$message")" != "1" ]; then
            continue
        fi
        if [ "$(jq -r .success <<<"$message")" = "true" ]; then
            jq -c '.result' <<<"$message"
            return 0
        fi
        echo "websocket: request failed: $(jq -c '.error' <<<"$message")" >&2
        return 1
    done
    echo "websocket: connection closed before the answer" >&2
    return 1
}

# A Sec-WebSocket-Key: 16 random bytes in base64, built from $RANDOM without base64(1).
_ws_key() {
    local alphabet='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
    local key="" i
    for ((i = 0; i < 21; i++)); do
        key+="${alphabet:RANDOM % 64:1}"
    done
    # The 22nd character carries only 2 bits of the last byte, so its low 4 bits are 0.
    local last='AQgw'
    printf '%s%s==' "$key" "${last:RANDOM % 4:1}"
}

# _ws_send_frame OPCODE TEXT: one final, masked frame.
_ws_send_frame() {
    local opcode="$1" text="$2"
    local -a bytes=()
    if [ -n "$text" ]; then
        read -r -a bytes <<<"$(printf '%s' "$text" | od -An -v -tu1 | tr -s ' \n' '  ')"
    fi
    local length=${#bytes[@]}
    local -a mask=($((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))

    local format
    printf -v format '\\x%02x' $((0x80 | opcode))
    if ((length < 126)); then
        printf -v format '%s\\x%02x' "$format" $((0x80 | length))
    else
        printf -v format '%s\\x%02x\\x%02x\\x%02x' "$format" 254 $((length >> 8)) $((length & 255))
    fi
    local i
    for i in 0 1 2 3; do
        printf -v format '%s\\x%02x' "$format" "${mask[i]}"
    done
    for ((i = 0; i < length; i++)); do
        printf -v format '%s\\x%02x' "$format" $((bytes[i] ^ mask[i % 4]))
    done
    # shellcheck disable=SC2059 # the format is the frame, built from \x escapes only
    printf "$format" >&"$WS_FD"
}

# _ws_read_byte VAR: reads one byte (0-255) into VAR; returns 1 at end of stream.
_ws_read_byte() {
    local char
    # A NUL byte ends the read as its delimiter: status 0 and an empty char, which
    # printf turns into 0. At end of stream the status is non-zero.
    LC_ALL=C IFS= read -r -d '' -n 1 -u "$WS_FD" char || return 1
    LC_ALL=C printf -v "$1" '%d' "'$char"
}

# _ws_read_message VAR: reads the next text message into VAR. Replies to pings, skips
# other control frames, returns 1 on close or end of stream. Fragments are joined.
_ws_read_message() {
    local -n _ws_out="$1"
    local b0 b1 opcode length i byte payload=""
    while :; do
        _ws_read_byte b0 || return 1
        _ws_read_byte b1 || return 1
        opcode=$((b0 & 15))
        length=$((b1 & 127))
        if ((length == 126)); then
            length=0
            for i in 1 2; do _ws_read_byte byte || return 1; length=$((length * 256 + byte)); done
        elif ((length == 127)); then
            length=0
            for i in 1 2 3 4 5 6 7 8; do _ws_read_byte byte || return 1; length=$((length * 256 + byte)); done
        fi
        local chunk=""
        if ((length > 0)); then
            LC_ALL=C IFS= read -r -d '' -N "$length" -u "$WS_FD" chunk || [ ${#chunk} -gt 0 ] || return 1
        fi
        case "$opcode" in
            8) return 1 ;;
            9) _ws_send_frame 10 "$chunk" ;;
            10) ;;
            *)
                payload+="$chunk"
                if ((b0 & 128)); then
                    _ws_out="$payload"
                    return 0
                fi
                ;;
        esac
    done
}
