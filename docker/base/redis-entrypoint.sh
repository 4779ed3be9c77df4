#!/bin/sh
# The official redis image's entrypoint, in short: `redis-server ARGS` without a config file
# gets --protected-mode no, and runs as the redis user (owning /data) rather than root.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = "redis-server" ]; then
    case "${2:-}" in
        *.conf) ;;
        *) shift; set -- redis-server --protected-mode no "$@" ;;
    esac
    if [ "$(id -u)" = 0 ]; then
        chown -R redis:redis . 2>/dev/null || true
        exec setpriv --reuid redis --regid redis --init-groups "$@"
    fi
fi
exec "$@"
