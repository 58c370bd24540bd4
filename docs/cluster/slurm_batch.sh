#!/bin/bash
# LabelFree batch export as a SLURM job array: each array task runs one shard of the inputs.
#
#   sbatch --array=1-16 docs/cluster/slurm_batch.sh /data/experiment42 /data/experiment42_predictions
#   # when every task has finished (or as a dependent job):
#   sbatch --dependency=afterany:<jobid> --wrap "labelfree batch-report /data/experiment42_predictions"
#
# Shards are chosen by a hash of each input's name, so the tasks never overlap and together cover
# every input exactly once, whatever order the file system lists them in. A task that dies can be
# resubmitted alone (--array=7): finished outputs are skipped and the rest is redone. Each task
# writes batch_report.shard-K-of-N.csv; batch-report merges them into batch_report.csv.
#SBATCH --job-name=labelfree-batch
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=labelfree-%A_%a.log
# For GPU nodes add:  #SBATCH --gres=gpu:1   (LabelFree picks CUDA when it is there)
set -euo pipefail

INPUTS="${1:?give the input folder}"
OUTDIR="${2:?give the output folder}"
MODELS="${MODELS:-isl-dapi-unet}"          # space-separated model ids or package folders
LABELFREE="${LABELFREE:-labelfree}"        # e.g. /opt/labelfree/labelfree or a venv's bin/labelfree

model_args=()
for model in $MODELS; do model_args+=(--model "$model"); done

export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-8}"
"$LABELFREE" batch "$INPUTS" -o "$OUTDIR" "${model_args[@]}" \
    --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" --quiet
