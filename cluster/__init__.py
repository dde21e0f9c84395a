"""A real Flink 1.19 session cluster on this machine, for refresh tests across processes.

One JobManager and two TaskManagers run as separate JVMs from the Flink jars that Beam 2.62.0's
Flink runner resolves (`make flink-jobserver`), and Beam's `FlinkJobServerDriver` submits
portable pipelines to them. Python SDK workers start beside each TaskManager (a PROCESS
environment whose boot program is the project's one, `python -m liveinference_expansion.boot`),
each with the temp directory and log folder of its TaskManager.

Modules, one job each:
    config        ports, directories and the Flink configuration of each process
    jvm           Java command lines (class path, --add-opens, Flink's memory flags)
    state         the state file under ~/.cache/liveinference/flink-cluster/, process checks
    flink         start / stop / status, and the command line (`python -m cluster.flink start`)
    objectstore   an S3-compatible store (moto's server) for models, announcements, channel
    places        where a run keeps models, announcements and its event channel (local, S3)
    observe       which worker made a record, and a sink the tests and benchmark read back
    pipelines     the streaming refresh pipeline (watch or event mode), and its options
    models        constant scikit-learn models, and one that is slow to load
    scenarios     refresh and fault scenarios driven by events (tests/cluster, the benchmark)
    analysis      versions per worker, first swap times, rows lost and duplicated
    throughput    rows per second through RunInference on the cluster (a batch job)
"""
