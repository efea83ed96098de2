"""``python -m face_health``: the ``face-health`` command line (``kedro run`` needs no
``__main__``; run the pipelines with ``kedro run``)."""

from face_health.command_line import main

if __name__ == "__main__":
    main(prog_name="face-health")
