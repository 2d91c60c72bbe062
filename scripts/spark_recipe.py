"""The MLflow way past one machine: facekp's registered pyfunc model scored by Spark.

`mlflow.pyfunc.spark_udf` wraps a registered model (`facekp export --register NAME`) as a Spark
UDF; Spark spreads a DataFrame of image paths (or image bytes) over its executors, each of which
loads the model once and predicts its partitions in batches. The output is the pyfunc's 28
columns `<point>_x`, `<point>_y` in pixels of each image. Needs `pip install pyspark` (not in
requirements.lock: 456 MB, see docs/SCALE.md) and Java 17.

Usage (local mode; on a cluster, `spark-submit` this file with --master yarn/k8s and paths every
executor can read, e.g. s3a://):
    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python scripts/spark_recipe.py \\
        --model-uri models:/facekp/1 --images faces_data/test/images --out preds.parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-uri", required=True, help="e.g. models:/facekp/1 or models:/facekp@champion")
    parser.add_argument("--images", type=Path, required=True, help="a folder of images")
    parser.add_argument("--out", type=Path, required=True, help="Parquet output folder (Spark writes one)")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    import os

    import mlflow.pyfunc
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors run this environment's facekp

    spark = (
        SparkSession.builder.master(args.master)
        .appName("facekp-spark-udf")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    paths = sorted(str(p.resolve()) for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    frame = spark.createDataFrame([(p,) for p in paths], ["image"]).repartition(2)
    # env_manager="local": executors use this Python environment (facekp installed) instead of
    # building one from the model's requirements; result_type comes from the model's signature.
    keypoints = mlflow.pyfunc.spark_udf(spark, args.model_uri, env_manager="local")
    started = time.perf_counter()
    scored = frame.withColumn("points", keypoints("image")).select("image", "points.*")
    scored.write.mode("errorifexists").parquet(str(args.out))
    seconds = time.perf_counter() - started
    result = spark.read.parquet(str(args.out))
    columns = len(result.columns)
    print(f"scored {result.count()} images in {seconds:.1f} s into {args.out} ({columns} columns)")
    shown = result.orderBy("image").select("image", "left_eyebrow_outer_x", "left_eyebrow_outer_y")
    shown.show(3, truncate=60)
    spark.stop()


if __name__ == "__main__":
    main()
