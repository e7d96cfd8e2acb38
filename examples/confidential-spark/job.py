"""The confidential job: total cost per ward over patient rows. Its Spark settings (the shared
authentication secret, encryption) come from the properties file the coordinator provisioned;
the dataset is a file the coordinator provisioned into the driver's memory only.

usage: job.py MASTER_URL PROPERTIES DATASET_CSV RESULT_CSV
"""
import sys, time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

master, properties, dataset, result_path = sys.argv[1:5]
builder = SparkSession.builder.master(master).appName("veil-confidential-job")
for line in open(properties):
    if line.strip() and not line.startswith("#"):
        key, value = line.split(None, 1)
        builder = builder.config(key, value.strip())
spark = builder.config("spark.executor.memory", "512m").config("spark.cores.max", "2").getOrCreate()
spark.sparkContext.setLogLevel("WARN")
start = time.time()
lines = [line.rstrip("\n").split(",") for line in open(dataset)][1:]
rows = spark.createDataFrame(lines, ["patient", "ward", "cost"]).repartition(4)
totals = rows.groupBy("ward").agg(F.sum(F.col("cost").cast("long")).alias("total")).orderBy("ward").collect()
open(result_path, "w").write("".join(f"{row['ward']},{row['total']}\n" for row in totals))
print(f"job done in {time.time() - start:.2f} s", flush=True)
spark.stop()
