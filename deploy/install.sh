#!/usr/bin/env bash
# Install the scream detector as a service on 64-bit Raspberry Pi OS (Bookworm or Trixie).
#
#   sudo deploy/install.sh              # from a checkout of this repository on the Pi
#   sudo deploy/install.sh --dry-run    # print every step, change nothing
#   deploy/install.sh --config-only DIR # only write the config a fresh install gets, into DIR
#   sudo deploy/install.sh --verifier DIR  # also the second stage: DIR holds YAMNet's yamnet.tflite
#                                          # and yamnet_class_map.csv (README: An optional second stage)
#
# Safe to run again: every step checks before it acts. What it does:
#   apt packages (PortAudio, venv, the Pi 5 GPIO backend python3-lgpio), a system user `scream` in the
#   `audio` and `gpio` groups, a virtual environment in /opt/scream-detector/venv with the `edge`
#   extra, config in /etc/scream-detector, models and state in /var/lib/scream-detector, and the
#   systemd unit, enabled and started. With --verifier, YAMNet in /opt/scream-detector/yamnet with the
#   bundled model's head on its embedding and, in a fresh config, the [verifier] section with the pair
#   measured for them (another YAMNet: its Screaming class and that pair, since the head would be
#   refused). The config is checked (`scream listen --check-config`, as the service user) before the
#   service starts.
set -euo pipefail

DRY_RUN=0
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/scream-detector
VENV="$PREFIX/venv"
CONFIG_DIR=/etc/scream-detector
STATE_DIR=/var/lib/scream-detector
MODELS_DIR="$STATE_DIR/models"
BUNDLED_MODEL=scream-v6  # models/NAME.tflite + .json; the same name as edge/cli.py's DEFAULT_MODEL_NAME
UNIT=/etc/systemd/system/scream-detector.service
SERVICE_USER=scream
START_SERVICE=1
CONFIG_ONLY=""
VERIFIER_DIR=""
VERIFIER_HOME="$PREFIX/yamnet"
# The second stage the bundled model was measured with: YAMNet as Google released it (its sha256).
# For that YAMNet the bundled model's sidecar records the pairs `scream verification --record` chose on
# validation scenes, for the head fitted on its embedding (models/scream-v6-verifier-head/report.json)
# and for its Screaming class (models/scream-v6-verifier/report.json); the config leaves threshold and
# on_threshold to them, so a model deployed later runs the pair it recorded itself. Any other YAMNet
# has no recorded pair: the Screaming pair is written out for it, as numbers.
VERIFIER_SHA256=469be6a3421cbc52cf97e9f2f966cba984198e8e7af9854d68b3e3ebb1e04194
VERIFIER_HEAD="$BUNDLED_MODEL-yamnet-head.json"  # in models/ of the source, fitted by scream verifier-head
VERIFIER_ON=0.8996
VERIFIER_THRESHOLD=0.029055
VERIFIER_ATTEMPTS=4  # verdicts per candidate that pair was chosen with ([verifier] attempts)
VERIFIER_USE_HEAD=0
VERIFIER_PAIRED=0  # 1: the YAMNet the bundled model's pairs hold for

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: --dry-run  --source DIR  --no-start  --config-only DIR  --verifier DIR"
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --source) SOURCE_DIR="$2"; shift ;;
        --no-start) START_SERVICE=0 ;;
        --config-only) CONFIG_ONLY="$2"; shift ;;
        --verifier) VERIFIER_DIR="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

step() { printf '==> %s\n' "$*"; }
run() {
    printf '    $ %s\n' "$*"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

# A fresh install runs with the defaults: every output on, no schedule, the site named after the
# host. config.example.toml (every key, with example values) is copied beside it for reference.
write_config() {
    local dir="$1" site
    site="$(hostname 2>/dev/null || echo scream-detector)"
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<EOF
# Written by deploy/install.sh. Keys not set here keep their defaults: every output (LED, buzzer,
# event log, clips) on, MQTT and webhooks off, no schedule, the model's own operating point.
# config.example.toml beside this file lists every key; copy what you need from it.

[site]
name = "$site"
location = ""

[model]
path = "$MODELS_DIR/current/model.tflite"

[paths]
state_dir = "$STATE_DIR"
EOF
    if [ -n "$VERIFIER_DIR" ]; then
        verifier_section >>"$dir/config.toml"
    fi
    cp "$SOURCE_DIR/deploy/config.example.toml" "$dir/config.example.toml"
}

# The lines that turn the second stage on. With the YAMNet the bundled model's pairs hold for, the
# thresholds stay the running model's own (its sidecar's pair for this verifier, which every model
# deployed later brings with it; scream deploy push refuses a model without one). With another YAMNet,
# the bundled model's Screaming pair as numbers, which a model deployed later keeps until changed.
verifier_section() {
    if [ "$VERIFIER_USE_HEAD" -eq 1 ]; then
        cat <<EOF

[verifier]
# threshold, attempts and [detector] on_threshold: the pair the running model recorded for this YAMNet
# and head (scream verification --record; scream check-model MODEL --config FILE shows it)
model = "$VERIFIER_HOME/yamnet.tflite"
head = "$VERIFIER_HOME/$VERIFIER_HEAD"
EOF
    elif [ "$VERIFIER_PAIRED" -eq 1 ]; then
        cat <<EOF

[verifier]
# threshold, attempts and [detector] on_threshold: the pair the running model recorded for this YAMNet's
# Screaming class (scream verification --record; scream check-model MODEL --config FILE shows it)
model = "$VERIFIER_HOME/yamnet.tflite"
classes = ["Screaming"]
EOF
    else
        cat <<EOF

[detector]
# chosen with YAMNet's Screaming class for $BUNDLED_MODEL (models/$BUNDLED_MODEL-verifier/report.md) on
# another YAMNet file than this one; another model needs its own pair from 'scream verification'
on_threshold = $VERIFIER_ON

[verifier]
model = "$VERIFIER_HOME/yamnet.tflite"
classes = ["Screaming"]
threshold = $VERIFIER_THRESHOLD
attempts = $VERIFIER_ATTEMPTS
EOF
    fi
}

# --verifier DIR: both files of YAMNet's release, checked before anything is changed.
if [ -n "$VERIFIER_DIR" ]; then
    for file in yamnet.tflite yamnet_class_map.csv; do
        if [ ! -r "$VERIFIER_DIR/$file" ]; then
            echo "install.sh: --verifier $VERIFIER_DIR has no readable $file (YAMNet's TF-Lite release:" \
                "yamnet.tflite and yamnet_class_map.csv)" >&2
            exit 1
        fi
    done
    VERIFIER_FILE_SHA="$(sha256sum "$VERIFIER_DIR/yamnet.tflite" | cut -d' ' -f1)"
    if [ "$VERIFIER_FILE_SHA" != "$VERIFIER_SHA256" ]; then
        echo "install.sh: warning: $VERIFIER_DIR/yamnet.tflite (sha256 ${VERIFIER_FILE_SHA:0:12}) is not the" \
            "YAMNet the bundled model's head was fitted on (${VERIFIER_SHA256:0:12}), so the head would be" \
            "refused: its Screaming class with on_threshold = $VERIFIER_ON and threshold = $VERIFIER_THRESHOLD" \
            "instead; check the pair with 'scream verification'" >&2
    elif [ ! -r "$SOURCE_DIR/models/$VERIFIER_HEAD" ]; then
        echo "install.sh: warning: no $SOURCE_DIR/models/$VERIFIER_HEAD: YAMNet's Screaming class instead" >&2
        VERIFIER_PAIRED=1
    else
        VERIFIER_USE_HEAD=1
        VERIFIER_PAIRED=1
    fi
fi

if [ -n "$CONFIG_ONLY" ]; then
    write_config "$CONFIG_ONLY"
    echo "wrote $CONFIG_ONLY/config.toml (and config.example.toml beside it)"
    exit 0
fi

if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or with --dry-run to see the steps" >&2
    exit 1
fi
if [ ! -f "$SOURCE_DIR/pyproject.toml" ]; then
    echo "install.sh: $SOURCE_DIR is not a scream-detector checkout (no pyproject.toml)" >&2
    exit 1
fi
if [ ! -f "$SOURCE_DIR/models/$BUNDLED_MODEL.tflite" ] || [ ! -f "$SOURCE_DIR/models/$BUNDLED_MODEL.json" ]; then
    echo "install.sh: the bundled model models/$BUNDLED_MODEL.tflite (+ .json) is missing from $SOURCE_DIR" >&2
    exit 1
fi

PYTHON_MINOR="$(python3 -c 'import sys; print(sys.version_info[1])')"
step "Raspberry Pi OS packages (Python 3.$PYTHON_MINOR)"
PACKAGES=(python3-venv python3-dev libportaudio2 portaudio19-dev python3-lgpio build-essential)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
else
    echo "    all present"
fi

step "system user $SERVICE_USER in groups audio and gpio"
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    run useradd --system --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
for group in audio gpio; do
    if getent group "$group" >/dev/null 2>&1; then
        id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group" || run usermod -aG "$group" "$SERVICE_USER"
    else
        echo "    group $group does not exist on this system; skipped"
    fi
done

step "virtual environment $VENV with the edge extra"
# Python 3.13 has no lgpio wheel on PyPI (only a source package and a placeholder that breaks
# gpiozero): let the venv see Raspberry Pi OS's python3-lgpio instead.
VENV_FLAGS=()
if [ "$PYTHON_MINOR" -ge 13 ]; then
    VENV_FLAGS+=(--system-site-packages)
fi
if [ ! -x "$VENV/bin/python" ]; then
    run mkdir -p "$PREFIX"
    run python3 -m venv "${VENV_FLAGS[@]}" "$VENV"
fi
run "$VENV/bin/pip" install --quiet --upgrade pip
run "$VENV/bin/pip" install --quiet "${SOURCE_DIR}[edge]"
if [ "$PYTHON_MINOR" -lt 13 ]; then
    run "$VENV/bin/pip" install --quiet lgpio
fi

step "config in $CONFIG_DIR"
run mkdir -p "$CONFIG_DIR"
if [ ! -f "$CONFIG_DIR/config.toml" ]; then
    if [ "$DRY_RUN" -eq 0 ]; then
        write_config "$CONFIG_DIR"
    else
        printf '    $ write %s with the defaults (site %s), config.example.toml beside it\n' \
            "$CONFIG_DIR/config.toml" "$(hostname 2>/dev/null || echo scream-detector)"
    fi
else
    echo "    $CONFIG_DIR/config.toml exists; kept"
fi

if [ -n "$VERIFIER_DIR" ]; then
    step "second stage (verifier) in $VERIFIER_HOME"
    run install -d -m 0755 "$VERIFIER_HOME"
    run install -m 0644 "$VERIFIER_DIR/yamnet.tflite" "$VERIFIER_DIR/yamnet_class_map.csv" "$VERIFIER_HOME/"
    if [ "$VERIFIER_USE_HEAD" -eq 1 ]; then
        run install -m 0644 "$SOURCE_DIR/models/$VERIFIER_HEAD" "$VERIFIER_HOME/"
    fi
    if [ -f "$CONFIG_DIR/config.toml" ] && ! grep -q '^\[verifier\]' "$CONFIG_DIR/config.toml"; then
        echo "    $CONFIG_DIR/config.toml was kept and names no verifier; to turn it on, add:"
        verifier_section | sed 's/^/        /'
    fi
fi

step "models and state in $STATE_DIR"
run mkdir -p "$MODELS_DIR/releases"
if [ ! -e "$MODELS_DIR/current" ]; then
    SHA="$(sha256sum "$SOURCE_DIR/models/$BUNDLED_MODEL.tflite" | cut -c1-12)"
    run mkdir -p "$MODELS_DIR/releases/$SHA"
    run cp "$SOURCE_DIR/models/$BUNDLED_MODEL.tflite" "$MODELS_DIR/releases/$SHA/model.tflite"
    run cp "$SOURCE_DIR/models/$BUNDLED_MODEL.json" "$MODELS_DIR/releases/$SHA/model.json"
    run ln -sfn "releases/$SHA" "$MODELS_DIR/current"
else
    echo "    a model is installed ($MODELS_DIR/current); kept"
fi
if id "$SERVICE_USER" >/dev/null 2>&1 || [ "$DRY_RUN" -eq 1 ]; then
    run chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
fi

step "config check, as $SERVICE_USER"
run runuser -u "$SERVICE_USER" -- "$VENV/bin/scream" listen --config "$CONFIG_DIR/config.toml" --check-config

step "systemd unit $UNIT"
run install -m 0644 "$SOURCE_DIR/deploy/scream-detector.service" "$UNIT"
run systemctl daemon-reload
run systemctl enable scream-detector.service
if [ "$START_SERVICE" -eq 1 ]; then
    run systemctl restart scream-detector.service
fi
step "done: 'systemctl status scream-detector' and '$VENV/bin/scream status --config $CONFIG_DIR/config.toml'"
