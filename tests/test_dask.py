"""Extraction on a real dask.distributed cluster (LocalCluster, 2 worker processes)."""

from __future__ import annotations

import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import make_ct_volume

from radhe.features.radiomics import RadiomicsFeatures

distributed = pytest.importorskip("distributed")

PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "glcm": None, "shape": None},
}


@pytest.mark.dask
def test_extraction_on_local_dask_cluster_equals_local_run(tmp_path):
    from radhe.parallel import dask_backend

    rows = []
    for i in range(4):
        image, mask = make_ct_volume(shape=(8, 40, 40), seed=i, blob_radius_vox=5)
        img, msk = tmp_path / f"img{i}.nii", tmp_path / f"msk{i}.nii"
        sitk.WriteImage(image, str(img))
        sitk.WriteImage(mask, str(msk))
        rows.append({"case_id": f"d{i}", "image": str(img), "mask": str(msk)})
    X = pd.DataFrame(rows, index=[5, 6, 7, 8])
    local = RadiomicsFeatures(PARAMS).fit_transform(X)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with dask_backend(client), distributed.get_task_stream(client) as stream:
            on_dask = RadiomicsFeatures(PARAMS, n_jobs=-1).fit_transform(X)
        # the cases were extracted by tasks on the cluster's workers
        workers = {task["worker"] for task in stream.data}
        assert stream.data and workers <= set(client.scheduler_info()["workers"])
    pd.testing.assert_frame_equal(local, on_dask)
