"""The reward farm's backends: where scoring runs (inline, Celery + Redis, Modal) and the
Celery app, tasks and consumer behind the ``celery`` backend. No Blender in this process;
the executor it drives runs Blender out of process."""
