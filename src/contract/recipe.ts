// The conversion recipe (contract/recipe.json): defaults for POST /v1/conversions and for the
// trainer's `convert` flags, and the recipe the shipped sotu-t2r was made with.
import { loadChecked } from './load.ts'
import { RecipeSchema } from './schemas.ts'

export const RECIPE = loadChecked('recipe.json', RecipeSchema)
