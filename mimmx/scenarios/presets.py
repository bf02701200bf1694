"""The named scenarios: MIMM's two benchmarks and the analogues of the MIMM-X poster's
medical experiments. Each ``story`` maps the toy factors onto the medical ones."""

from __future__ import annotations

from mimmx.scenarios.builder import FactorSpec, ScenarioSpec

DIGIT_GROUPS = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
# Fashion-MNIST classes: 0 T-shirt/top, 2 Pullover, 3 Dress, 4 Coat, 6 Shirt
SLEEVE_GROUPS = ((0, 3), (2, 4, 6))
TSHIRT_SHIRT = ((0,), (6,))  # a hard pair: one outline, told apart by details (collar, buttons)

SCENARIOS: dict[str, ScenarioSpec] = {
    "morpho": ScenarioSpec(
        name="morpho", dataset="mnist", y_groups=DIGIT_GROUPS, y_names=("digit < 5", "digit >= 5"),
        factors=(FactorSpec("thickness", "induced", "thickness", r=0.9),),
        story="MIMM's Morpho-MNIST benchmark: y = digit < 5 vs >= 5, z = thin vs thick strokes.\n"
              "In training 90% of small digits are thin and 90% of large ones thick: stroke width is a shortcut.",
    ),
    "fashion": ScenarioSpec(
        name="fashion", dataset="fashion-mnist",
        y_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        factors=(FactorSpec("border", "induced", "border", r=0.9),),
        story="MIMM's Fashion-MNIST benchmark: y = the 10 classes, z = one of 10 white border-bar patterns.\n"
              "In training class k carries pattern k 90% of the time: the bars are an easier cue than the garment.",
    ),
    # exp1: Morpho-MNIST, y = intact vs fractured digit (mimmx's own fractures), any digit class;
    # the factors do not re-draw the digit, so the fractures stay readable in every cell.
    # Calibrated on the Baseline and the Oracle (docs/study/session9.md §1). The selection split's
    # cell-balanced score has a sampling error of at most 2 points at 5,000 images (4.4 at 1,000;
    # docs/study/session18.md §1).
    "exp1": ScenarioSpec(
        name="exp1", dataset="mnist", y_source="fracture2", y_names=("young", "old"),
        n_train=10000, n_selection=5000, n_test=3000,
        factors=(FactorSpec("marker", "induced", "marker", r=0.9, analogue="sex"),
                 FactorSpec("site", "induced", "site", r=0.9, analogue="dataset (NAKO/UKB)")),
        story="Brain MRI analogue (poster Exp1): age young/old ~ a digit as written / the same digit with two\n"
              "small fractures (subtle structural change, any digit); sex ~ a marker patch left/right; dataset\n"
              "NAKO/UKB ~ acquisition site (contrast, blur, noise). Both factors co-occur with y at r = 0.9.",
    ),
    "exp2": ScenarioSpec(
        name="exp2", dataset="fashion-mnist", y_groups=TSHIRT_SHIRT,
        y_names=("no effusion", "effusion"), n_train=9000, n_selection=1000, n_test=600,
        factors=(FactorSpec("marker", "induced", "marker", r=0.9, analogue="sex"),
                 FactorSpec("intensity", "induced", "intensity", r=0.9, analogue="age")),
        story="Chest X-ray analogue (poster Exp2): pleural effusion ~ shirt vs T-shirt/top (collar, buttons, sleeves:\n"
              "details on one outline); sex ~ a laterality-marker patch left/right; age ~ a global intensity change.\n"
              "Both induced.",
    ),
    # exp3: the largest sizes the two classes support for every cell of every split (brightness
    # and width are natural, at the poster's ratio table), for the Oracle's training set too.
    "exp3": ScenarioSpec(
        name="exp3", dataset="fashion-mnist", y_groups=TSHIRT_SHIRT,
        y_names=("no effusion", "effusion"), n_train=4000, n_selection=400, n_test=400,
        factors=(FactorSpec("marker", "induced", "marker", table=((0.45, 0.05), (0.05, 0.45)), analogue="sex"),
                 FactorSpec("brightness", "natural", "brightness", table=((0.19, 0.31), (0.12, 0.38)),
                            quantile=0.45, analogue="age"),
                 FactorSpec("extent", "natural", "extent", table=((0.29, 0.21), (0.14, 0.36)),
                            quantile=0.45, analogue="CoD")),
        story="Chest X-ray analogue (poster Exp3): pleural effusion ~ shirt vs T-shirt/top (collar, buttons, sleeves:\n"
              "details on one outline); sex ~ a marker patch is induced, but age ~ garment brightness and CoD ~\n"
              "garment width are natural attributes measured from the images, at the poster's ratio table.",
    ),
    # exp1_digits: the first brain-MRI analogue, y = digit group. Digit groups are learnt so easily
    # that no calibration gives both the poster's shortcut and room above it: the lesson of a data
    # ceiling (docs/study/why-mimmx-works-history.md §8, §12). Its draws are those it had as
    # "exp1".
    "exp1_digits": ScenarioSpec(
        name="exp1_digits", draws="exp1", dataset="mnist", y_groups=DIGIT_GROUPS, y_names=("young", "old"),
        n_train=4000, n_selection=1000,
        factors=(FactorSpec("thickness", "induced", "thickness", r=0.9, analogue="sex"),
                 FactorSpec("site", "induced", "site", r=0.9, analogue="dataset (NAKO/UKB)")),
        story="Brain MRI analogue, first design: age young/old ~ digit < 5 / >= 5; sex ~ thin/thick strokes;\n"
              "dataset NAKO/UKB ~ acquisition site. Digits are so easy that the data cap every method here.",
    ),
}


def get_spec(name: str) -> ScenarioSpec:
    try:
        return SCENARIOS[name]
    except KeyError:
        from mimmx.errors import UserError

        raise UserError(f"unknown scenario {name!r}; choose one of {sorted(SCENARIOS)}") from None
