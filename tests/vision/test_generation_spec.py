"""The web → worker contract: a GenerationSpec survives its JSON trip, sampling included."""

from vision.engine.contract import SamplingParams
from vision.generation import GenerationSpec, SpecImage, SpecMessage, SpecPart


def test_spec_round_trips_through_json():
    spec = GenerationSpec(
        request_id="chatcmpl-1",
        messages=[
            SpecMessage("system", [SpecPart(text="Be brief.")]),
            SpecMessage(
                "user", [SpecPart(image=SpecImage("uploads/a/b.png", "ab" * 32)), SpecPart(text="?")]
            ),
        ],
        task="vqa",
        sampling=SamplingParams(
            max_tokens=7,
            temperature=0.5,
            top_p=0.9,
            seed=3,
            stop=("END", "\n\n"),
            min_tokens=2,
            ignore_eos=True,
        ),
        max_pixels=4096,
        deadline_s=12.5,
        use_prefix_cache=False,
    )

    again = GenerationSpec.from_json(spec.to_json())

    assert again == spec
    assert isinstance(again.sampling.stop, tuple)  # hashable, as the engine's SamplingParams wants


def test_the_engine_takes_the_same_sampling_class():
    # One definition of the sampling fields: the engine's SamplingParams is the contract's class.
    from vision.engine import SamplingParams as EngineSamplingParams

    assert EngineSamplingParams is SamplingParams


def test_a_constraint_rides_along_and_comes_back_as_the_same_constraint():
    from vision.engine import Constraint as EngineConstraint
    from vision.engine.constraints import Constraint, json_schema_constraint

    constraint = json_schema_constraint({"type": "object", "properties": {"a": {"enum": [1, 2]}}}, name="t")
    spec = GenerationSpec(request_id="job-1", messages=[SpecMessage("user", [SpecPart(text="?")])])
    spec.constraint = constraint.to_dict()
    again = GenerationSpec.from_json(spec.to_json())
    assert again == spec
    assert Constraint.from_dict(again.constraint) == constraint
    assert EngineConstraint is Constraint
